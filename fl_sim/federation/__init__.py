"""The federation: Flower ClientApp and ServerApp, the eavesdropping strategy and its tap,
client training, partitions and client update transforms."""
