from ocrq.cli import main

main()
