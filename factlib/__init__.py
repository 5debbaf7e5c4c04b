"""factlib: the computations behind the textbook *How Transformers Store Facts*.

One module per idea of Nichani, Lee and Bietti (ICLR 2025): ``embeddings``, ``memory``, ``capacity`` and so on;
``python -m factlib reproduce <figure>`` runs a figure's sweep.
"""
__version__ = "0.1.0"
