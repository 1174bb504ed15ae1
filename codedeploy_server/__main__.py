"""`python -m codedeploy_server` runs the server's command line."""

from codedeploy_server.cli import main

raise SystemExit(main())
