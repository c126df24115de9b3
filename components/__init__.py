"""kfp components: thin typed adapters over riskml.

Every component is a lightweight Python component built with :func:`components.base.component`
(one pinned base image, no pip installs at run time: the image — or, for ``kfp.local``, this
virtualenv — already has riskml). Bodies import inside the function and call one
core function (data sources, feature store, training tasks, holdout evaluation, registry,
deploy).

Modules: ``data`` (simulate or import), ``features`` (build, Feast apply + materialise, training
sets), ``training`` (tune, XGBoost, sequence model, calibrate + ensemble), ``evaluation``
(backtest, gate), ``registry`` (register, deploy).
"""
