"""Compression: make a trained depth network cheaper, and say exactly how much cheaper.

One idea a module, in the order a reader meets them:

* :mod:`~slimdepth.compress.layers` -- what every conv/linear layer does in a traced forward pass;
* :mod:`~slimdepth.compress.groups` -- what a group of coupled channels is;
* :mod:`~slimdepth.compress.graph` -- :class:`~slimdepth.compress.graph.ChannelGraph`, the
  dependency graph that finds the groups and is the one place channels are removed;
* :mod:`~slimdepth.compress.channel_cost` -- MACs and parameters as functions of the channels kept;
* :mod:`~slimdepth.compress.search` -- the one bisection every budget search uses;
* :mod:`~slimdepth.compress.masks` -- method 1, learned binary filter masks;
* :mod:`~slimdepth.compress.gating` -- method 2, dynamic channel gating (a package);
* :mod:`~slimdepth.compress.baselines` -- magnitude (L1) and uniform-width pruning;
* :mod:`~slimdepth.compress.prune` -- the ``slimdepth prune`` schedule over run directories;
* :mod:`~slimdepth.compress.compare` -- one table of cost and accuracy, measured side by side (in
  PyTorch, or on the deployment runtimes with the exported files themselves).
"""
