from publieksdata.cli import main

main()
