from shared.tools.cli.main import main

main()
