from model_serving.cli.main import main

main()
