from crafter_tui.cli import main

raise SystemExit(main())
