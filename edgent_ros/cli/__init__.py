"""The ``edgent-ros`` command line: all argparse lives here (``main`` builds the parser)."""
