"""`python -m conveyor ...` runs the command line (the same as `conveyor ...`)."""

from conveyor.cli import main

if __name__ == "__main__":
    main()
