//! The console's words, in Chinese (the regulation's language, and the
//! default) and English. Field labels follow the art. 18 registration form:
//! who, when, purpose, approval document, credentials.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "zh-CN" | "zh" => Some(Lang::Zh),
            "en" => Some(Lang::En),
            _ => None,
        }
    }
    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }
}

/// (key, Chinese, English).
const WORDS: &[(&str, &str, &str)] = &[
    ("product", "custody 证据保管库", "custody evidence vault"),
    ("items", "证据", "Items"),
    ("health", "集群状态", "Cluster health"),
    ("court_page", "法庭核验页", "Court's page"),
    ("logout", "退出", "Log out"),
    ("login", "登录", "Log in"),
    ("refused", "被拒绝", "Refused"),
    (
        "login_intro",
        "使用本人的签名密钥登录：密钥只在本浏览器内签名，绝不发送到服务器。",
        "Log in with your own signing key: it signs in this browser and is never sent to the server.",
    ),
    ("signing_key", "签名密钥文件", "Signing key file"),
    ("remember_key", "在本浏览器中保存密钥（不可导出）", "Keep the key in this browser (non-extractable)"),
    ("login_stored", "使用已保存的密钥登录", "Log in with the stored key"),
    ("case", "案件编号", "Case"),
    ("system", "来源系统", "Source system"),
    ("depositor", "存证人", "Depositor"),
    ("from", "自", "From"),
    ("until", "至", "Until"),
    ("search", "查询", "Search"),
    ("item", "证据编号", "Item"),
    ("deposited_at", "存证时间", "Deposited"),
    ("size", "大小", "Size"),
    ("retention", "保存期限", "Retention"),
    ("retain_until", "保存至", "kept until"),
    ("hold", "司法保全", "Legal hold"),
    ("note", "备注", "Note"),
    ("standard", "普通（15 天）", "standard (15 days)"),
    ("important", "重要（365 天）", "important (365 days)"),
    ("previous", "上一页", "Previous"),
    ("next", "下一页", "Next"),
    ("download_proof", "下载证明包", "Download the proof bundle"),
    ("trail", "保管记录", "Custody trail"),
    ("leaf", "记录号", "Leaf"),
    ("when", "时间", "When"),
    ("event", "事项", "Event"),
    ("who", "人员", "Who"),
    ("purpose", "事由", "Purpose"),
    ("approval_doc", "审批文书", "Approval document"),
    ("credentials", "凭证", "Credentials"),
    ("officers", "经办民警", "Officers"),
    ("approver", "审批人", "Approver"),
    ("signed", "本人签名（已核验）", "own signature (verified)"),
    ("signatures_checked", "依据经核验的签名", "on verified signatures"),
    ("kind.deposit", "存证", "Deposit"),
    ("kind.request", "调阅申请", "Request"),
    ("kind.approval", "审批签名", "Approval"),
    ("kind.grant", "批准", "Grant"),
    ("kind.access", "调阅", "Access"),
    ("kind.hold", "司法保全", "Hold"),
    ("kind.retention", "保存期限变更", "Retention change"),
    ("kind.purge", "销毁", "Purge"),
    ("kind.scrub", "巡检发现", "Scrub finding"),
    ("kind.reshare", "密钥份额重分", "Re-share"),
    ("cluster", "集群", "Cluster"),
    ("leader", "主节点", "leader"),
    ("term", "任期", "term"),
    ("dev_cluster", "开发集群（节点自动解封）", "DEV cluster (nodes unseal themselves)"),
    ("node", "节点", "Node"),
    ("address", "地址", "Address"),
    ("role", "角色", "Role"),
    ("state", "状态", "State"),
    ("last_applied", "已应用", "Applied"),
    ("missing_chunks", "缺失数据块", "Missing chunks"),
    ("voter", "投票成员", "voter"),
    ("learner", "学习成员", "learner"),
    ("sealed", "已封存", "SEALED"),
    ("unreachable", "不可达", "UNREACHABLE"),
    ("witnesses", "见证方", "Witnesses"),
    ("health_json", "脚本请用", "For scripts:"),
    ("requests", "调阅审批", "Requests"),
    ("new_request", "申请调阅", "Request access"),
    ("request", "申请", "Request"),
    ("action", "调阅方式", "Action"),
    ("action.view", "查看", "view"),
    ("action.retrieve", "调取", "retrieve"),
    ("action.copy", "复制", "copy"),
    ("action.purge", "销毁", "purge"),
    ("co_officers", "共同经办民警（逗号分隔）", "Co-officers (comma-separated)"),
    ("max_fetches", "可调阅次数", "Fetches allowed"),
    ("expires_hours", "有效时长（小时）", "Valid for (hours)"),
    ("emergency", "紧急", "emergency"),
    ("sign_and_file", "签名并提交", "Sign and file"),
    ("filed", "已提交：", "Filed:"),
    ("key_stored", "将使用本浏览器中保存的密钥签名", "The key kept in this browser will sign"),
    ("signed_by", "已签名", "Signed by"),
    ("expires", "有效至", "Expires"),
    ("sign", "签名批准", "Sign"),
    ("queue_empty", "没有待审批的申请", "No open request"),
    ("deposit", "存证", "Deposit"),
    ("clip", "视频文件", "Clip"),
    ("not_leader", "存证须提交到主节点；请在主节点打开控制台：", "A deposit goes to the leader; open the console there:"),
    ("sealing", "正在本地加密：", "Sealing here:"),
    ("uploading", "正在上传：", "Uploading:"),
    ("seal_and_deposit", "加密、签名并存证", "Seal, sign and deposit"),
    ("deposited", "已存证：", "Deposited:"),
    ("report", "保管报告", "Custody report"),
    ("custody_report", "电子证据保管报告", "Custody report of an evidence item"),
    ("report_generated", "生成于", "Generated"),
    ("filing", "备案编号", "Filing number"),
    ("operator", "运营单位 · 位置", "Operator · location"),
    ("accesses", "调阅登记", "Accesses"),
    ("no_access", "无调阅记录", "No access recorded"),
    ("approvals", "审批", "Approvals"),
    ("proof", "完整性证明", "Proof"),
    ("proof_text", "下列记录均在经多数节点签名的审计日志中；本报告内嵌证明包，可用 custody-verify 或法庭核验页离线核验。", "Every record above is in the audit log a majority of the nodes signed; the proof bundle is embedded in this report and can be checked offline with custody-verify or the court's page."),
    ("log", "日志", "Log"),
    ("tree_size", "日志长度", "Tree size"),
    ("root", "根哈希", "Root hash"),
    ("deposit_leaf", "存证记录号", "Deposit leaf"),
    ("trail_records", "证据链记录数", "Trail records"),
    ("save_bundle", "保存证明包", "Save the proof bundle"),
    ("registry", "人员登记", "Registry"),
    ("pending", "待第二名管理员批准的变更", "Changes waiting for a second administrator"),
    ("change", "变更", "Change"),
    ("subject", "对象", "Subject"),
    ("filed_by", "提交人", "Filed by"),
    ("detail", "内容", "Detail"),
    ("people", "人员", "People"),
    ("name", "姓名", "Name"),
    ("badge", "警号", "Badge"),
    ("unit", "单位", "Unit"),
    ("roles", "角色", "Roles"),
    ("revoked", "已注销", "REVOKED"),
    ("systems", "来源系统", "Source systems"),
    ("add_person", "登记人员", "Register a person"),
    ("public_key", "签名公钥（Base64）", "Signing public key (base64)"),
    ("revoke_person", "注销人员", "Revoke a person"),
    ("fetch", "调阅", "Fetch"),
    ("fetches", "已调阅 / 可调阅", "Fetches used / allowed"),
    (
        "fetch_intro",
        "调阅前先登记：本浏览器签署调阅声明，主节点记录后，各节点才各自释放密钥份额；视频在本浏览器内解密并核对 SHA-256。",
        "The access is recorded first: this browser signs the access statement, the leader records it, and only then does each node release its key share; the clip is opened in this browser and its SHA-256 checked.",
    ),
    ("fetch_not_leader", "调阅须由主节点登记；请在主节点打开：", "An access is recorded by the leader; open this page there:"),
    ("no_grants", "您没有此证据的已批准申请。", "You hold no granted request for this item."),
    ("opening", "正在解密：", "Opening:"),
    ("downloading", "正在接收：", "Receiving:"),
    ("fetched", "已调阅并核对：", "Fetched and checked:"),
    ("save_clip", "保存视频", "Save the clip"),
];

/// The words of one language.
#[derive(Clone, Copy)]
pub struct T(pub Lang);

impl T {
    /// The word for `key`; the key itself when there is none (a new kind shows as itself).
    pub fn get<'a>(&self, key: &'a str) -> &'a str {
        match WORDS.iter().find(|(k, ..)| *k == key) {
            Some((_, zh, en)) => match self.0 {
                Lang::Zh => zh,
                Lang::En => en,
            },
            None => key,
        }
    }
    pub fn count(&self, n: usize) -> String {
        match self.0 {
            Lang::Zh => format!("共 {n} 件"),
            Lang::En => format!("{n} item{}", if n == 1 { "" } else { "s" }),
        }
    }
    pub fn page_of(&self, page: usize, pages: usize) -> String {
        match self.0 {
            Lang::Zh => format!("第 {page} / {pages} 页"),
            Lang::En => format!("page {page} of {pages}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_word_has_both_languages_and_keys_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for (k, zh, en) in super::WORDS {
            assert!(seen.insert(k), "`{k}` twice");
            assert!(!zh.is_empty() && !en.is_empty(), "`{k}`");
        }
    }
}
