"""The model: the compact, exact device-side parser every answer is checked against.

Guest memory (memory), the split-virtqueue chain walk (chain), the answer a
parser gives (answer) and the tx/rx packet parse with its profiles (packet).
Pure functions over a case: no processes, files or clocks. It imports only the
case layer."""
