"""The dispatcher runtime: pykka actors on a few shared threads (private)."""
