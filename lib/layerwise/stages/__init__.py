"""The stages of a run, one module each; :class:`layerwise.pipeline.Run` delegates to them.

* :mod:`~layerwise.stages.cached` - the cached-table helper (named key parts + a hash of the code);
* :mod:`~layerwise.stages.slots` - :class:`ModelSlot`, the models of the design and their roles;
* :mod:`~layerwise.stages.adapters` - the multi-task mixture and the LoRA adapters (SFT, controls);
* :mod:`~layerwise.stages.states` - loading a slot's model (the one place) and extracting its
  hidden states and response loss per task, the states and centred Gram matrices on disk;
* :mod:`~layerwise.stages.evaluation` - the task-level evaluation (accuracy, F1, ROUGE-L);
* :mod:`~layerwise.stages.tables` - the similarity table (with the shuffled-row null) and spectra;
* :mod:`~layerwise.stages.variants` - the template-variation inputs, states and table.

Every stage function takes the :class:`~layerwise.pipeline.Run` as its context (spec, output
folder, tasks, slots) and computes only what is missing on disk.
"""
