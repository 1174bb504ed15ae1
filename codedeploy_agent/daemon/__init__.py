"""The long-running agent: deployment commands over MQTT (AWS IoT Jobs protocol)."""
