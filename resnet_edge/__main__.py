"""``python -m resnet_edge`` runs the command line interface."""

from resnet_edge.cli import main

if __name__ == "__main__":
    main()
