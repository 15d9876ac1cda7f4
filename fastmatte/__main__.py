from fastmatte.cli import main

raise SystemExit(main())
