"""Training, export and evaluation of the models the runtime ships.

Nothing in the inference code (``models.runtime`` and what it imports) imports this
package; it imports the inference modules (encoders, fusion, unimodal stack, labels).

Commands:
  python -m models.training.train         every training stage, then the assets folder
  python -m models.training.export        the fusion model and small encoders to ONNX
  python -m models.training.evaluate      the evaluation document, figures and model card
  python -m models.training.speech_seeds  the speech figures over several training seeds

Stages of ``train`` (``--stages``), in order, and the module that runs each:
  cache        feature_cache  the corpora through the live extractors, cached
  text         text           text sentiment encoder (CMU-MOSI + CMU-MOSEI)
  text_states  text           its outputs for every sentence and dropped copy
  audio        speech         speech emotion encoder (RAVDESS + EmoDB)
  face         face           facial expression encoder (FER-2013)
  face_swa     face           (not by default) stochastic weight averaging of it
  views        face           its outputs of jittered views of every FER-2013 image
  domain       calibrate      in-domain statistics of each encoder's window summaries
  calibrate    calibrate      temperatures, ordinal spreads, class scores, prior
  fusion       fusion         LNLN on composed trimodal windows
  fusion_head  fusion         (not by default) only the fusion's ordinal head, trunk frozen
  select       fusion         the single-modality fallback
  package      package        fp16 weights and runtime.json into assets/

Shared pieces: ``config`` (TrainConfig, seeds, schedules), ``best`` (keep the best
validation epoch's weights), ``data`` (corpus loaders), ``feature_cache``, ``missing``
(missing-data scheme), ``composed`` (composed trimodal windows), ``predict`` (predictions
of trained encoders, shared with evaluation), ``metrics``, ``baselines``, ``report``
(the evaluation document) and ``speed`` (the fusion's latency). Evaluation imports no
trainer module.
"""
