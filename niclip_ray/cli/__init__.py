"""The ``niclip-ray`` command line: one module per command group, no logic beyond I/O."""
