"""mfcore.launch: starting a job on many ranks and nodes (``mf-launch``). ``spec.py`` is what one node
starts (the msrun command line) and the small log readers, ``launcher.py`` runs msrun and watches the
ranks, ``msrun_node.py`` is msrun's process manager with the scheduler on node 0 only, and
``restarts.py`` restarts a failed job and holds the exit codes a job and its launcher agree on."""
