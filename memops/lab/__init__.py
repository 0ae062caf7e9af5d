"""The lab: container hosts on this machine that look like real ones (systemd, sshd, apt).

``invoke lab.up`` starts them and writes an inventory of the staging shape for them;
``invoke deploy --inventory`` that inventory then deploys over SSH exactly as on real
hosts. Nothing of the lab is installed system-wide: Docker, debootstrap and tinyproxy
are unpacked from Debian's packages into the lab's cache when no Docker engine runs.
"""
