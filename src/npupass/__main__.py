from npupass.cli import main

raise SystemExit(main())
