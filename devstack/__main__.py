"""``python -m devstack up|down|status`` and ``python -m devstack cluster up|down|status``."""

import sys

if sys.argv[1:2] == ["cluster"]:
    from devstack.cluster_cli import main as cluster_main

    sys.exit(cluster_main(sys.argv[2:]))

from devstack.cli import main

sys.exit(main())
