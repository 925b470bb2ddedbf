from carve.cli import main

raise SystemExit(main())
