"""The classifier's offline tooling: training, labelling, evaluation, the labelled data
sets, the synthetic briefs and the command line (``python -m services.classifier
<command>``). The running service never imports this package."""
