"""storlab: build whole storage labs (NFS, iSCSI, Gluster, Ceph) and test how they behave."""

__version__ = "0.1.0"
