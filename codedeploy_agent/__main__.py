"""`python -m codedeploy_agent` runs the command line."""

from codedeploy_agent.cli import main

raise SystemExit(main())
