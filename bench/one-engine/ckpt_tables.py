# Issue 25: bytes per table in checkpoint files (which tables a delta rewrites).
# Usage: python3 bench/one-engine/ckpt_tables.py DATA_DIR/checkpoints/*.ckpt
import sys, struct, collections
names={1:'orders',2:'order links',3:'free order slots',4:'retired',5:'holdings',6:'remembered answers',7:'idem tenants',8:'free tenants',9:'skus'}
for path in sys.argv[1:]:
    b=open(path,'rb').read()
    assert b[:8]==b'SURGECK1'
    flags,number,parent,seq=struct.unpack_from('<IQQQ',b,12)
    head_len=struct.unpack_from('<I',b,48)[0]
    at=64+head_len; at+= (8-head_len%8)%8
    end=len(b)-32
    per=collections.Counter(); chunks=collections.Counter()
    while at<end:
        table,_,chunk,elements,plen,crc=struct.unpack_from('<HHIIII',b,at)
        per[table]+=plen; chunks[table]+=1
        at+=20+plen; at+=(8-(20+plen)%8)%8
    print(f"{path.split('/')[-1]} {'full' if flags&1 else 'delta'} seq={seq} bytes={len(b)/1e6:.1f}MB: " + ", ".join(f"{names.get(t,t)} {per[t]/1e6:.1f}MB/{chunks[t]}ch" for t in sorted(per)))
