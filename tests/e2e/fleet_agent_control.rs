//! What an agent enforces itself from the control state in Consul KV: halts cancel its running actuating tasks and refuse new ones, direct calls included; locks with mutual TLS.
