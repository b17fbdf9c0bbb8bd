"""``python -m niclip_ray`` runs the CLI."""

from niclip_ray.cli.main import main

main()
