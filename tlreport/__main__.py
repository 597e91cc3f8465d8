from tlreport.cli import main

raise SystemExit(main())
