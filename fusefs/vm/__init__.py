"""What happens when a page of a file is mapped: the vm operations of each
write-notification policy, the open file a mapping holds, the backing cache and dirty
throttling.  Simulated processes and live mappings call the same code here."""
