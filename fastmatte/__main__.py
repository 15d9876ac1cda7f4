import sys

try:
    from fastmatte.cli import main  # imports torch: a Ctrl-C can come while that takes seconds
except KeyboardInterrupt:
    print("fastmatte: interrupted while starting", file=sys.stderr)
    raise SystemExit(130) from None

raise SystemExit(main())
