"""Generator scripts for sources that are generated rather than downloaded.

Each script runs in a throw-away virtual environment that holds the generator's pinned packages
(:func:`layerwise.sources.fetch_source`, registry ``"generate"``), never in the project's own
environment, so the scripts import their packages only inside ``main``.
"""
