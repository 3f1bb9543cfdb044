#!/usr/bin/env python3
"""Paired gains of pretraining in the pretrain-pools sweep: each pretrain-first run against the run
of the same task, backbone, seed and downstream recipe (fine-tune or SVM probe) without it, by
backbone and method, pool size and labels a class (docs/pretrain.md). Needs pandas and pyarrow.
Usage: scripts/pretrain-gains.py [meta_dataset/source=sweep-pretrain-pools]"""
import json, sys
import numpy as np
import pandas as pd
d=pd.read_parquet(sys.argv[1] if len(sys.argv)>1 else 'meta_dataset/source=sweep-pretrain-pools')
d=d[d.status=='ok']
print('runs',len(d),'pretrain-first',(d.r_pretrain!='none').sum(),'tasks',d.task_id.nunique(),'families',d.family.nunique())
print(d[d.r_pretrain!='none'].groupby(['backbone','r_pretrain']).size().to_string())
spec=d.task_spec.apply(json.loads)
d['pool']=spec.apply(lambda s: s['spec'].get('unlabelled',0) if 'spec' in s else 0)
d['kind']=np.where(d.strategy=='finetune','ft','probe')
d['scratch']=d.r_name.str.contains('-r99-')
base=d[d.r_pretrain=='none'].set_index(['task_id','backbone','seed','kind']).test_accuracy
pf=d[d.r_pretrain!='none'].copy()
pf['never']=[base.get((t,b,s,k),np.nan) for t,b,s,k in zip(pf.task_id,pf.backbone,pf.seed,pf.kind)]
pf['gain']=(pf.test_accuracy-pf.never)*100
pf['arm']=pf.r_pretrain+np.where(pf.scratch,' (scratch)','')
pf['poolb']=pd.cut(pf.pool,[0,300,3000,10**6],labels=['~100','~1000','~5000'])
t=pf.groupby(['backbone','kind','arm']).gain.agg(['mean','count',lambda x:(x>1).mean()]).round(2)
t.columns=['mean gain (pts)','runs','share gaining >1pt']
print(t.to_string())
print(pf.groupby(['poolb','kind']).gain.agg(['mean','count']).round(2).to_string())
print(pf.groupby([pd.cut(pf.mf_shots_min,[0,2,5,20]),'kind']).gain.agg(['mean','count']).round(2).to_string())
