"""mfcore.config: the run configuration. ``schema.py`` declares every section and key (with the help
text ``docs.py`` turns into ``docs/configuration.md``), ``loader.py`` reads YAML (shipped names in
``mfcore/configs/`` or paths), inheritance and ``section.key=value`` overrides into a typed
``RunConfig``, and ``checks.py`` refuses sizes that cannot work together before anything starts."""
