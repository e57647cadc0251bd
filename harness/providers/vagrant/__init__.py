"""vagrant-libvirt VMs: the provider, the box it boots, the data it hands the Vagrantfile, and the Vagrantfile itself."""
