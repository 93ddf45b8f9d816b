"""engine/network: the kernel side of Docker's networking, synchronous and free of the journal.

netns.py (namespace files without a process), links.py (bridges, veths, addresses via pyroute2),
ipam.py (pools and addresses, pure), nft.py (our one nftables table, replaced atomically), ports.py
(-p syntax, holding host ports), dns.py (the embedded DNS server at 127.0.0.11). The journaled
service that drives them is engine/services/networks.
"""
