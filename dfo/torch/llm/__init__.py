"""The LLM application of the torch adapter: prompt classification tasks and ``dfo finetune``.

:mod:`dfo.torch` is the adapter (the :class:`~dfo.torch.ZerothOrder` optimizer, its direction
generators and side paths, the Hugging Face ``Trainer`` glue); this package is one use of it:

* :mod:`~dfo.torch.llm.tasks` — k-shot classification tasks (SST-2, RTE, a task of one's own as JSON);
* :mod:`~dfo.torch.llm.prompt` — a causal or masked LM read as a classifier over label words;
* :mod:`~dfo.torch.llm.models` — loading a local checkpoint (never a download);
* :mod:`~dfo.torch.llm.finetune` — the fine-tuning run (zeroth order or backprop) and its results;
* :mod:`~dfo.torch.llm.checkpoint` — the run's checkpoint format;
* :mod:`~dfo.torch.llm.finetune_command` — ``dfo finetune``.

Nothing here is imported by :mod:`dfo.torch` itself.
"""
