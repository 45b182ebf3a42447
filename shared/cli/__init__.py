"""The `creatorflow` command line: `shared.cli.main` assembles it."""
