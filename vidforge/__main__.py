from vidforge.cli import main

main()
