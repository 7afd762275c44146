from mnistcodec.cli import main

raise SystemExit(main())
