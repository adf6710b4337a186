"""The .nshr artifact codec: a pickle-free container whose tensors are each stored by
the smallest lossless encoding found (dense, byte planes, codebook, sparse gaps), with
every symbol stream raw-packed, Huffman- or ANS-coded, whichever is smallest.

    write_archive(path, header, tensors, hints=None) -> bytes written
    read_archive(path) -> (header, tensors)
    inspect_archive(path) -> per-tensor rows + a total row
"""

from netshrink.codec.archive import (inspect_archive, join_archive, open_archive, read_archive, split_archive,
                                     write_archive)

__all__ = ["write_archive", "read_archive", "open_archive", "inspect_archive", "split_archive", "join_archive"]
