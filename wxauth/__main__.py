"""``python -m wxauth``: the same as the ``wxauth`` command."""

from wxauth._cli import main

raise SystemExit(main())
