from swaprtc.cli import main

raise SystemExit(main())
