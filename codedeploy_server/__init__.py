"""codedeploy-server: a self-hosted control plane that speaks the AWS CodeDeploy API and drives
codedeploy-agent daemons over MQTT with the AWS IoT Jobs protocol."""

__version__ = "0.1.0"
