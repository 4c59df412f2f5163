from model_serving.cli import main

main()
