"""The LLM application of the torch adapter: prompt classification tasks and ``dfo finetune``.

:mod:`dfo.torch` is the adapter (the :class:`~dfo.torch.ZerothOrder` optimizer, its direction
generators and side paths, the Hugging Face ``Trainer`` glue); this package is one use of it:

* :mod:`~dfo.torch.llm.tasks` — k-shot classification tasks (SST-2, RTE, a task of one's own as JSON);
* :mod:`~dfo.torch.llm.prompt` — a causal or masked LM read as a classifier over label words;
* :mod:`~dfo.torch.llm.models` — loading a local checkpoint (never a download);
* :mod:`~dfo.torch.llm.config` — a run's settings (:class:`~dfo.torch.llm.config.FinetuneConfig`, holding a ``ZOConfig``);
* :mod:`~dfo.torch.llm.runtime` — device, model loading (LoRA), forward precision;
* :mod:`~dfo.torch.llm.job` — the run as a job: typed state, ``step`` / ``state_dict`` / ``load_state_dict`` / ``run``;
* :mod:`~dfo.torch.llm.finetune` — :func:`~dfo.torch.llm.finetune.finetune`: the run folder, then the job;
* :mod:`~dfo.torch.llm.checkpoint` — the run's checkpoints (``step_`` folders of :mod:`dfo.run.checkpoint`);
* :mod:`~dfo.torch.llm.finetune_command` — ``dfo finetune``.

Nothing here is imported by :mod:`dfo.torch` itself.
"""
