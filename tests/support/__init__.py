"""What the tests share: device emulators built on the real contracts, small recorded datasets, tiny policies and
the arm / camera recordings several test modules drive. Test modules import from here (``from support.X import
...``; pytest puts tests/ on the path through tests/conftest.py), never from one another."""
