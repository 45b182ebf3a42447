"""The `creatorflow` command line: `shared.tools.cli.main` assembles it."""
