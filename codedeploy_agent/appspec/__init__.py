"""The appspec file: EC2/on-premises grammar (executed by the agent), Lambda and ECS (parsed only)."""
