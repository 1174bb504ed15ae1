"""`codedeploy`: the operator CLI, friendly commands on top of boto3's `codedeploy` client.

`main.py` parses arguments and composes; each command lives in its own module (`push`,
`deploy`, `status`, `listing`, `stop`, `instances`, `logs`); `client.py` builds the boto3 clients
and maps botocore's exceptions into `errors.py`; `render.py` draws with rich.
"""
