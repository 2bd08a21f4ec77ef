"""The neural field: coordinate encodings (Fourier features, hash grid and its compiled CPU kernel),
the network with its contrast heads, the cubic base it adds to, the back-projected residuals
(data consistency), and the model file."""
