"""Subcommands of ``mlsan-live``: one module each, exposing NAME, HELP, add_arguments, run.

``run(args) -> int`` returns the exit code; a :class:`mlsan.errors.UserFacingError` raised from
it is printed by ``edge_app.cli`` as one line with a non-zero exit.
"""
