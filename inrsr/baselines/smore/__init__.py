"""SMORE: self-supervised super-resolution of one thick-slice volume from its own in-plane slices.

Our implementation of Zhao et al., "SMORE: a self-supervised anti-aliasing and super-resolution
algorithm for MRI using deep learning", IEEE TMI 2021.

The idea: a thick-slice volume is sharp in-plane (spacing ``a`` mm) and blurred and sparsely
sampled through-plane (spacing ``b`` mm, ratio ``r = b / a``). Degrading the sharp in-plane slices
along one of their axes the way the scanner degraded the through-plane axis gives training pairs
(degraded → sharp) from the volume itself; a 2D network trained on them is then applied to the
through-plane slices, which really are degraded that way.

Frames and units
----------------
* Everything works in the stack's own *array* frame, with the thick axis ``t`` (the array axis with
  the largest voxel size) moved last: ``(P, Q, n)`` where ``P``, ``Q`` are the in-plane axes.
* Along a degraded axis, positions are in *HR rows* (in-plane voxels of ``a`` mm). Low-resolution
  sample ``k`` covers HR rows ``[k·r, (k+1)·r)`` and sits at row ``k·r + (r−1)/2``
  (:func:`~inrsr.baselines.smore.geometry.lr_positions`); HR row ``j`` lies at LR index ``(j + 0.5)/r − 0.5`` (:func:`~inrsr.baselines.smore.geometry.hr_positions`).
* Thick slice ``k`` of the real volume covers ``[z_k − b/2, z_k + b/2]``; the high-resolution
  through-plane grid therefore has ``round(n·r)`` rows of ``a`` mm, the first centred at
  ``z_0 − b/2 + a/2`` (:func:`~inrsr.baselines.smore.geometry.hr_affine`). Training and inference use the same two positions, so a
  network trained on in-plane pairs sees through-plane slices with exactly the geometry it learned.
* The slice profile is a function of the offset from a thick slice's centre in HR rows: a Gaussian
  with FWHM = thickness / a, or a box of that width
  (:func:`inrsr.acquisition.profiles.profile_density`).
* Intensities are divided by the 99.5th percentile of the foreground before training and multiplied
  back at the end; outputs are in the input's units.

Choosing the profile matters more than anything else here (BraTS, factor 4, measured): a stack
whose slices are means of 4 thin slices (``inrsr simulate --profile box``) needs ``box``; the default
Gaussian (FWHM = thickness, the paper's model of a real slice profile) is blurrier than that, so the
network over-sharpens and ends up several dB *below* cubic interpolation. A stack of point samples
(``--profile point``: no blur, only aliasing) needs a thin profile, e.g. ``box`` with a thickness of
one in-plane voxel.

What this implementation leaves out of the paper: the separate anti-aliasing network that precedes
super-resolution for 2D acquisitions (one network here learns both from pairs that are blurred,
sampled and interpolated), the paper's own way of combining orientations (here: the mean of two),
and its much larger network and training budget.

Modules: :mod:`~inrsr.baselines.smore.config` (options), :mod:`~inrsr.baselines.smore.geometry`
(frames above), :mod:`~inrsr.baselines.smore.degrade` (the one-axis degradation),
:mod:`~inrsr.baselines.smore.network`, :mod:`~inrsr.baselines.smore.train` and
:mod:`~inrsr.baselines.smore.run` (entry points :func:`~inrsr.baselines.smore.run.smore_volume`,
volume on an output grid, and :func:`~inrsr.baselines.smore.run.smore_native`, on the stack's
own refined grid).
"""
